//! The demo HTTP and HTTPS targets: `/` says hello, `/health` answers `{"status":"ok"}` as
//! JSON, anything else is a 404. HTTPS offers h2 and HTTP/1.1 (ALPN) with the demo certificate.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const LEAF_PEM: &str = include_str!("leaf.pem");
const LEAF_KEY: &str = include_str!("leaf.key");

pub fn tls_config() -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(LEAF_PEM.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the demo certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(LEAF_KEY.as_bytes())
        .map_err(|e| format!("the demo key: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|e| format!("the demo TLS configuration: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, kind, body) = match req.uri().path() {
        "/" => (200, "text/plain", "hello from the sonde demo\n"),
        "/health" => (200, "application/json", r#"{"status":"ok"}"#),
        _ => (404, "text/plain", "not here\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    resp.headers_mut().insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("sonde-demo"),
    );
    Ok(resp)
}

/// Serve connections on `listener`, over TLS when `tls` is given, until aborted.
pub async fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let service = hyper::service::service_fn(answer);
            let _ = match acceptor {
                None => builder.serve_connection(TokioIo::new(tcp), service).await,
                Some(a) => match a.accept(tcp).await {
                    Ok(s) => builder.serve_connection(TokioIo::new(s), service).await,
                    Err(_) => return,
                },
            };
        });
    }
}
