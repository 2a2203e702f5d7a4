//! `saga ui`: serves [`crate::ui`]'s pages until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::CliError;
use crate::ui::{self, UiOptions};
use saga_engine::store::SagaStore;
use saga_engine::Registry;

/// `saga ui`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct UiArgs {
    /// Address and port to listen on; anything but a loopback address is reachable from other
    /// machines (a warning says so)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Show each saga's data on its page (hidden by default, as payloads are in logs)
    #[arg(long)]
    show_data: bool,
    /// Offer retry and abort on a saga's page, each with a reason recorded in its history
    #[arg(long)]
    allow_actions: bool,
    /// Require this bearer token on every page [default: $SAGA_UI_TOKEN]
    #[arg(long, env = ui::TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Also serve requests whose Host is this DNS name, e.g. behind a proxy (repeatable; IP
    /// addresses and localhost always pass)
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let bad =
        || format!("`{text}` is not an address and port such as 127.0.0.1:8080 or [::1]:8080");
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    // `localhost:8080` means the loopback address, as a browser takes it.
    match text.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Runs the server over `store` with the sagas of `registry`.
pub(crate) async fn ui(
    store: Arc<dyn SagaStore>,
    registry: Registry,
    args: UiArgs,
) -> Result<(), CliError> {
    if args.token.as_deref() == Some("") {
        eprintln!("warning: the token given is empty, so no page needs one");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: saga ui listens on {}, which other machines can reach{}",
            addr,
            if args.token.as_deref().is_some_and(|t| !t.is_empty()) {
                "; every page needs the token, sent in clear over HTTP: put TLS in front"
            } else {
                "; anyone who can reach it sees every saga: give --token, or listen on 127.0.0.1"
            }
        );
    }
    let mut options = UiOptions::default()
        .show_data(args.show_data)
        .allow_actions(args.allow_actions)
        .token(args.token);
    for host in args.allow_hosts {
        options = options.allow_host(host);
    }
    let modes = [
        (options.show_data, "data shown"),
        (options.allow_actions, "retry and abort allowed"),
        (options.token.is_some(), "token required"),
    ];
    let modes: Vec<&str> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
    let modes = match modes.is_empty() {
        true => "read only, no data shown".to_string(),
        false => modes.join(", "),
    };
    let router = ui::router(store, Arc::new(registry), options);
    out!("saga ui: serving http://{addr}/ ({modes}; Ctrl-C stops)");
    ui::serve(listener, router, crate::stopped())
        .await
        .map_err(|e| CliError::Output(format!("the server stopped: {e}")))?;
    Ok(())
}
