//! E-mail over SMTP (lettre): one plain-text message per alert change, subject
//! `[FIRING] <summary>`. Keys follow Alertmanager's `email_configs` where the meaning is the same
//! (`smarthost`, `from`, `to`, `hello`, `auth_username`, `auth_password`, `tls_config.ca_file`).
//!
//! `tls: starttls` (the default, port 587) requires the server to offer STARTTLS and upgrades
//! before anything else is said — never "opportunistic", which a man in the middle can strip;
//! `tls: tls` is TLS from the first byte (port 465); `tls: none` (port 25) is refused together
//! with a password, which would then cross the network in clear. The server's certificate is
//! checked against the system's roots, or only against `tls_config.ca_file` when given.
//! SMTP's 5xx answers (authentication failed, mailbox refused) are refusals; 4xx and network or
//! TLS failures are retried.

use std::path::Path;
use std::sync::Arc;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome};

super::register!("email", parse);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    smarthost: String,
    #[serde(default)]
    tls: TlsMode,
    from: String,
    to: OneOrMany,
    hello: Option<String>,
    auth_username: Option<String>,
    auth_password: Option<String>,
    auth_password_file: Option<String>,
    tls_config: Option<TlsKeys>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsKeys {
    ca_file: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TlsMode {
    #[default]
    Starttls,
    Tls,
    None,
}

struct Email {
    host: String,
    port: u16,
    tls: TlsMode,
    ca: Option<Vec<u8>>,
    hello: Option<String>,
    from: Mailbox,
    to: Vec<Mailbox>,
    credentials: Option<(String, String)>,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "email")?;
    let default_port = match k.tls {
        TlsMode::Starttls => 587,
        TlsMode::Tls => 465,
        TlsMode::None => 25,
    };
    let (host, port) = host_port(&k.smarthost, default_port)?;
    let mailbox = |what: &str, s: &str| {
        s.parse::<Mailbox>().map_err(|e| {
            format!("invalid `{what}` {s:?}: {e} — expected an address such as sonde@example.com or \"sonde <sonde@example.com>\"")
        })
    };
    let from = mailbox("from", &k.from)?;
    let to = match k.to {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if to.is_empty() {
        return Err("empty `to` — expected at least one recipient".into());
    }
    let to = to
        .iter()
        .map(|s| mailbox("to", s))
        .collect::<Result<Vec<_>, _>>()?;
    let password =
        super::inline_or_file("auth_password", k.auth_password, k.auth_password_file, dir)?;
    let credentials = match (k.auth_username, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(
                "`auth_username` without `auth_password` or the other way round — expected both, or neither"
                    .into(),
            )
        }
    };
    if credentials.is_some() && k.tls == TlsMode::None {
        return Err("`auth_password` with `tls: none` would send the password in clear — expected `tls: starttls` (the default) or `tls: tls`".into());
    }
    let ca = match k.tls_config.and_then(|t| t.ca_file) {
        None => None,
        Some(f) => {
            let path = dir.join(&f);
            let pem = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read `tls_config.ca_file` {}: {} — expected a PEM file",
                    path.display(),
                    crate::config::io_reason(&e)
                )
            })?;
            Certificate::from_pem(&pem).map_err(|e| {
                format!(
                    "`tls_config.ca_file` {}: {e} — expected a PEM certificate",
                    path.display()
                )
            })?;
            Some(pem)
        }
    };
    Ok(Arc::new(Email {
        host,
        port,
        tls: k.tls,
        ca,
        hello: k.hello,
        from,
        to,
        credentials,
    }))
}

/// `host[:port]`, `[v6]:port`.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "invalid `smarthost` {s:?} — expected host or host:port, such as smtp.example.com:587"
        )
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

impl Email {
    fn transport(&self, ctx: &Ctx) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let params = || {
            let mut b = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca {
                b = b.certificate_store(lettre::transport::smtp::client::CertificateStore::None);
                if let Ok(c) = Certificate::from_pem(pem) {
                    b = b.add_root_certificate(c);
                }
            }
            b.build_rustls()
                .map_err(|e| format!("cannot set up TLS for {}: {e}", self.host))
        };
        let tls = match self.tls {
            TlsMode::Starttls => Tls::Required(params()?),
            TlsMode::Tls => Tls::Wrapper(params()?),
            TlsMode::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(tls)
            .timeout(Some(ctx.timeout));
        if let Some(h) = &self.hello {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        if let Some((u, p)) = &self.credentials {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(b.build())
    }

    /// An SMTP error in words, without the password (no server should echo it, but a hostile
    /// one might).
    fn describe(&self, e: &lettre::transport::smtp::Error) -> String {
        let text = format!("SMTP {}:{}: {e}", self.host, self.port);
        match &self.credentials {
            Some((_, p)) if !p.is_empty() => {
                text.replace(p.as_str(), crate::config::redact::REDACTED)
            }
            _ => text,
        }
    }
}

impl Channel for Email {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        Box::pin(async move {
            let message = match message(&self.from, &self.to, ev) {
                Ok(m) => m,
                Err(e) => return Outcome::Rejected(format!("cannot build the message: {e}")),
            };
            let transport = match self.transport(ctx) {
                Ok(t) => t,
                Err(e) => return Outcome::Rejected(e),
            };
            // lettre's timeout is per command; the notifier's timeout bounds the whole attempt.
            match tokio::time::timeout(ctx.timeout, transport.send(message)).await {
                Err(_) => Outcome::Retry(format!(
                    "SMTP {}:{}: no answer within {}",
                    self.host,
                    self.port,
                    sonde_probes::fmt_duration(ctx.timeout)
                )),
                Ok(Ok(_)) => Outcome::Delivered,
                Ok(Err(e)) if e.is_permanent() => Outcome::Rejected(self.describe(&e)),
                Ok(Err(e)) => Outcome::Retry(self.describe(&e)),
            }
        })
    }
}

pub fn subject(ev: &Event) -> String {
    let (_, tag) = super::tag(ev);
    format!("[{tag}] {}", ev.summary)
}

pub fn text(ev: &Event) -> String {
    let mut text = format!("{}\n\n{}\n\n", subject(ev), ev.description);
    for (label, value) in super::facts(ev) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text.push_str(&format!("\ndetails: {}\n", ev.generator_url));
    if let Some(r) = &ev.runbook_url {
        text.push_str(&format!("runbook: {r}\n"));
    }
    text.push_str("\n-- \nsonde\n");
    text
}

fn message(from: &Mailbox, to: &[Mailbox], ev: &Event) -> Result<Message, String> {
    let mut b = Message::builder().from(from.clone()).subject(subject(ev));
    for t in to {
        b = b.to(t.clone());
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(text(ev))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smarthost_takes_a_host_and_an_optional_port() {
        assert_eq!(
            host_port("smtp.example.com", 587).unwrap(),
            ("smtp.example.com".into(), 587)
        );
        assert_eq!(
            host_port("smtp.example.com:2525", 587).unwrap(),
            ("smtp.example.com".into(), 2525)
        );
        assert_eq!(host_port("[::1]:25", 587).unwrap(), ("::1".into(), 25));
        for bad in ["", ":25", "smtp:0", "smtp:x", "[::1", "a b:25"] {
            assert!(host_port(bad, 587).is_err(), "{bad}");
        }
    }
}
