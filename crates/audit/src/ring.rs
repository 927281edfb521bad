//! A bounded ring of the most recent items.

use std::{collections::VecDeque, sync::Mutex};

/// Keeps the last `cap` items pushed, oldest first.
#[derive(Debug)]
pub struct Ring<T> {
    items: Mutex<VecDeque<T>>,
    cap: usize,
}

impl<T: Clone> Ring<T> {
    /// A ring of at most `cap` items (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    /// Appends items in order, dropping the oldest beyond the capacity.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        let mut r = self.items.lock().unwrap_or_else(|p| p.into_inner());
        for it in items {
            if r.len() >= self.cap {
                r.pop_front();
            }
            r.push_back(it);
        }
    }

    /// The items kept, oldest first.
    pub fn recent(&self) -> Vec<T> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// How many items are kept.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_items_in_order() {
        let r = Ring::new(3);
        r.extend([1]);
        r.extend([2, 3, 4]);
        r.extend([]);
        assert_eq!(r.recent(), [2, 3, 4]);
        let zero = Ring::new(0);
        zero.extend([1, 2]);
        assert_eq!(zero.recent(), [2]);
    }
}
