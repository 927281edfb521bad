//! A TCP forwarder to a real server that can be switched off and on, to test what happens
//! when a database server goes down (connections refused by closing them at once).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::net::{TcpListener, TcpStream};

/// A running forwarder on 127.0.0.1.
#[derive(Debug)]
pub struct Switch {
    /// Port it listens on.
    pub port: u16,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Switch {
    /// Forwards 127.0.0.1:`port` → 127.0.0.1:`target`, starting `up` or down.
    pub async fn start(target: u16, up: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let flag = Arc::new(AtomicBool::new(up));
        let f = flag.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !f.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            up: flag,
            task,
        })
    }

    /// Lets new connections through (true) or closes them at once (false).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
