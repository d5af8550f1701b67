//! The little HTTP/1.1 the local stand-ins (Lambda Runtime API, Slack webhook) need: read one
//! request (request line, headers, a `Content-Length` body) from a keep-alive connection.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

/// One request: method, path, body. `None` when the connection closed or broke.
pub(crate) async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
) -> Option<(String, String, Vec<u8>)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return None;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    let mut parts = request_line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    Some((method, path, body))
}
