//! A bare HTTP/1.1 client over one TCP connection, for tests that must see the bytes on the
//! wire: compressed bodies as sent, exact request and response sizes, headers a general client
//! would add or hide (`ureq` asks for gzip and inflates answers itself).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What the server answered, and how many bytes went each way.
#[derive(Debug, Clone)]
pub struct WireResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as sent (still compressed when `content-encoding` says so; chunking removed).
    pub body: Vec<u8>,
    /// Bytes of the request: request line, headers and body.
    pub sent: usize,
    /// Bytes of the response: status line, headers, chunk framing and body.
    pub received: usize,
}

impl WireResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body decoded (gunzipped when the response says gzip).
    pub fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some(e) if e.eq_ignore_ascii_case("gzip") => gunzip(&self.body),
            Some(other) => panic!("unexpected content-encoding {other}"),
            None => self.body.clone(),
        }
    }

    /// The decoded body as JSON (Null when empty).
    pub fn json(&self) -> Value {
        let body = self.decoded();
        if body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    }

    /// Status and JSON body, the shape [`crate::assert_error`] takes.
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.json())
    }
}

/// gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("compress");
    enc.finish().expect("compress")
}

/// Inflates a gzip body.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// `mib` MiB of `byte`, gzip-compressed to about 1 KiB per MiB: one compressed MiB (a full
/// flush makes each one identical) repeated. The trailer's checksum is left zero: a server must
/// refuse the body long before it gets there.
pub fn gzip_bomb(byte: u8, mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut raw = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 * 1024);
    raw.compress_vec(&vec![byte; 1 << 20], &mut block, FlushCompress::Full)
        .expect("compress");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[3, 0]); // a final, empty fixed-Huffman block
    out.extend_from_slice(&[0; 8]);
    out
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole answer.
/// `headers` are sent as given; `Host`, `Connection` and `Content-Length` (when there is a
/// body) are added.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> WireResponse {
    let addr = base.strip_prefix("http://").unwrap_or(base);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    let sent = out.len();
    // A server may answer (413) and close before reading everything: keep what it said.
    let _ = stream.write_all(&out);
    let mut raw = Vec::new();
    let mut reader = BufReader::new(stream);
    let _ = reader.read_to_end(&mut raw);
    parse_response(&raw, sent)
}

fn parse_response(raw: &[u8], sent: usize) -> WireResponse {
    let mut reader = BufReader::new(raw);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {:?}", String::from_utf8_lossy(raw)));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').expect("header");
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("chunk size");
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).expect("chunk size");
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk);
            line.clear();
            reader.read_line(&mut line).expect("chunk end");
        }
    } else {
        reader.read_to_end(&mut body).expect("body");
    }
    WireResponse {
        status,
        headers,
        body,
        sent,
        received: raw.len(),
    }
}
