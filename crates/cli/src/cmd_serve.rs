//! `cairn serve`: the web console over the same state store as every other command.

use crate::exit;
use crate::location::Location;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum AuthMode {
    /// Nobody is identified: the console only reads, and listens on loopback only
    None,
    /// Identity from X-Forwarded-User / X-Forwarded-Groups, from --trusted-proxy addresses only
    Proxy,
    /// Per-user tokens from --tokens FILE (hashed): a bearer header or the login form
    Token,
}

#[derive(clap::Args)]
pub struct Args {
    /// State store: a path or sqlite://PATH, or postgres://... (as for `cairn runs`); must exist
    #[arg(long, env = "CAIRN_STATE", value_name = "URL")]
    state: Option<String>,
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The folder of runbooks the console shows: each file's validation, steps and last runs
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Who is asking: none (read-only, loopback only), proxy, or token
    #[arg(long, value_enum, default_value = "none")]
    auth: AuthMode,
    /// With --auth proxy: the addresses (CIDR) whose X-Forwarded-User is believed (repeatable)
    #[arg(long = "trusted-proxy", value_name = "CIDR", num_args = 1..)]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// With --auth token: the file of `USER ROLES sha256:HEX [GROUPS]` lines
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    use cairn_serve::auth::{Auth, read_tokens};
    let auth = match a.auth {
        AuthMode::None => {
            // Without identities nothing can tell a reader from anyone on the network.
            if !a.listen.ip().is_loopback() {
                return Err(crate::Invalid(format!(
                    "--auth none serves to anyone who reaches {}: listen on a loopback address \
                     (127.0.0.1), or choose --auth token or --auth proxy",
                    a.listen
                ))
                .into());
            }
            Auth::None
        }
        AuthMode::Proxy => {
            if a.trusted_proxy.is_empty() {
                return Err(crate::Invalid(
                    "--auth proxy needs --trusted-proxy CIDR: the address of the proxy whose \
                     X-Forwarded-User is believed"
                        .into(),
                )
                .into());
            }
            Auth::Proxy {
                trusted: a.trusted_proxy.clone(),
            }
        }
        AuthMode::Token => {
            let Some(file) = &a.tokens else {
                return Err(crate::Invalid("--auth token needs --tokens FILE".into()).into());
            };
            let tokens = read_tokens(file).map_err(|e| crate::Invalid(e.to_string()))?;
            if tokens.is_empty() {
                return Err(
                    crate::Invalid(format!("{}: no token in the file", file.display())).into(),
                );
            }
            Auth::Token { tokens }
        }
    };
    if let Some(dir) = &a.runbooks
        && !dir.is_dir()
    {
        return Err(crate::Invalid(format!("--runbooks {}: not a folder", dir.display())).into());
    }
    let location = Location::resolve(a.state.as_deref());
    let url = location.url.clone();
    let logs_dir = crate::run_options::logs_dir(&url);
    // The console serves many clients at once: a runtime with a worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // On PostgreSQL, the run queue too: a run a worker paused goes back to it when answered.
        let (store, queue) = location.open_existing_with_queue().await?;
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
        let bound = listener.local_addr()?;
        let config = cairn_serve::Config {
            auth,
            resumer: cairn_serve::actions::Resumer {
                exe: std::env::current_exe()?,
                state_url: url.clone(),
                logs_dir: logs_dir.clone(),
                queue,
            },
            logs_dir,
            runbooks: a.runbooks.clone(),
            reports: Some(std::sync::Arc::new(
                crate::report::console::ConsoleReports::default(),
            )),
        };
        // The address actually bound (with --listen 127.0.0.1:0, the port chosen), on stdout
        // for scripts; what follows on stderr.
        println!("http://{bound}/");
        eprintln!(
            "cairn serve: listening on http://{bound}/ (--auth {})",
            config.auth.name()
        );
        cairn_serve::serve(listener, cairn_serve::App::new(store, config)).await?;
        Ok(exit::OK)
    })
}
