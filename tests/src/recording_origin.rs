//! An origin that records what reaches it, for tests of what the proxy forwards.

use anyhow::Result;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// A minimal HTTP/1.1 origin on loopback that records every request it gets and answers each
/// path with a small body and the headers set for it (keep-alive, so pooled connections work).
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    headers: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

/// One request the recording origin received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path and query.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl RecordingOrigin {
    pub fn start() -> Result<RecordingOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let headers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, h) = (requests.clone(), headers.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || serve_recorded(conn, r, h));
            }
        });
        Ok(RecordingOrigin {
            addr,
            requests,
            headers,
        })
    }

    /// Answers paths starting with `prefix` with this extra response header.
    pub fn set_header(&self, prefix: &str, name: &str, value: &str) {
        self.headers
            .lock()
            .unwrap()
            .push((prefix.into(), name.into(), value.into()));
    }

    /// Requests received for paths starting with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn serve_recorded(
    conn: TcpStream,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    headers: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
) {
    use std::io::Write;
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut got = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                got.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        requests.lock().unwrap().push(Recorded {
            target: target.clone(),
            headers: got,
        });
        let content_type = if target.contains(".m3u8") {
            "application/vnd.apple.mpegurl"
        } else {
            "video/mp2t"
        };
        let body: &[u8] = if target.contains(".m3u8") {
            b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n0.ts\n#EXT-X-ENDLIST\n"
        } else {
            b"segment-bytes"
        };
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (prefix, k, v) in headers.lock().unwrap().iter() {
            if target.starts_with(prefix.as_str()) {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        resp.push_str("\r\n");
        if writer.write_all(resp.as_bytes()).is_err() || writer.write_all(body).is_err() {
            return;
        }
    }
}
