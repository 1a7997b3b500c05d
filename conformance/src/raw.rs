//! Raw HTTPS requests to a test server as its admin, for what kubectl will not send (malformed or
//! contradictory bodies, patches without a field manager): one HTTP/1.1 request per connection.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kubectl::TestServer;

/// A response: status code and body text.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The body as text (lossy).
    pub body: String,
    pub body_bytes: Vec<u8>,
}

fn pki_file(server: &TestServer, name: &str) -> Vec<u8> {
    std::fs::read(server.data_dir.join("pki").join(name))
        .unwrap_or_else(|err| panic!("read pki/{name}: {err}"))
}

/// Sends one request with the admin client certificate (accepting JSON) and returns the response.
pub async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> RawResponse {
    send(server, method, path, content_type, "application/json", body).await
}

/// A GET accepting `accept`.
pub async fn request_with_accept(server: &TestServer, path: &str, accept: &str) -> RawResponse {
    send(server, "GET", path, "application/json", accept, b"").await
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: &[u8],
) -> RawResponse {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pki_file(server, "ca.crt")) {
        roots.add(cert.expect("CA certificate")).expect("trust the CA");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pki_file(server, "admin.crt"))
        .map(|cert| cert.expect("admin certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&pki_file(server, "admin.key")).expect("admin key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.server.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: coxswain-conformance\r\nAccept: {accept}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write request");
    tls.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    // The server may reset after its response; what was read is the response.
    let _ = tls.read_to_end(&mut response).await;
    parse(&response)
}

fn parse(response: &[u8]) -> RawResponse {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]);
    let body = response.get(split + 4..).unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { unchunk(body) } else { body.to_vec() };
    RawResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        body_bytes: body,
    }
}

fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
        let rest = &body[line_end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                out.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    out
}
