//! One keep-alive HTTP/1.1 connection posting to `/v1/query`: enough client for our own
//! server, and light enough not to weigh on the machine it measures. Shared by the benches.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Http {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// The status of one POST /v1/query, or 0 when the connection failed.
    pub async fn post(&mut self, body: &str) -> u16 {
        let request = format!(
            "POST /v1/query HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if self.stream.write_all(request.as_bytes()).await.is_err() {
            return 0;
        }
        self.buffer.clear();
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.stream.read(&mut chunk).await {
                Ok(n) if n > 0 => n,
                _ => return 0,
            };
            self.buffer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&self.buffer);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                if self.buffer.len() >= end + 4 + length {
                    return text[9..12].parse().unwrap_or(0);
                }
            }
        }
    }
}
