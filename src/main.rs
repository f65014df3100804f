//! The `oxcd` binary: parse etcd's flags, start the member, serve until
//! SIGINT or SIGTERM.

use std::collections::HashMap;
use std::process::ExitCode;

use oxcd::config::{self, Command};
use tokio_util::sync::CancellationToken;

/// mimalloc: less CPU per allocation than the system allocator on the
/// request path, and less memory held back after bursts.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = match config::parse(&args, &env) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code as u8);
        }
    };
    let level = oxcd::log::parse_level(&cfg.log_level).unwrap_or(tracing::Level::INFO);
    if let Err(e) = oxcd::log::init(level, &cfg.log_outputs) {
        eprintln!("cannot open log output: {e}");
        return ExitCode::from(1);
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(*cfg)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "oxcd stopped");
            1
        }
    };
    // Without C++ static destructors: the raft thread, the lease timer and
    // RocksDB's own threads may still be inside RocksDB.
    oxcd::process::exit_now(code)
}

async fn run(cfg: config::Config) -> oxcd::Result<()> {
    tracing::info!(
        etcd_version = oxcd::version::ETCD_API_VERSION,
        oxcd_version = oxcd::version::OXCD_VERSION,
        "starting oxcd"
    );
    let mut addrs = Vec::new();
    for url in &cfg.listen_client_urls {
        let addr = config::listen_addr(url).map_err(oxcd::Error::Internal)?;
        addrs.push((url.clone(), addr));
    }
    let listeners = oxcd::api::bind(&addrs).await?;
    let mut metrics_addrs = Vec::new();
    for url in &cfg.listen_metrics_urls {
        let addr = config::listen_addr(url).map_err(oxcd::Error::Internal)?;
        metrics_addrs.push((url.clone(), addr));
    }
    let metrics_listeners = oxcd::api::bind(&metrics_addrs).await?;
    let mut peer_addrs = Vec::new();
    for url in &cfg.listen_peer_urls {
        let addr = config::listen_addr(url).map_err(oxcd::Error::Internal)?;
        peer_addrs.push((url.clone(), addr));
    }
    let peer_listeners = oxcd::api::bind(&peer_addrs).await?;
    // Certificates, keys and the CA are read now: bad ones fail the start.
    let secure = cfg
        .listen_client_urls
        .iter()
        .chain(&cfg.listen_metrics_urls)
        .any(|u| u.starts_with("https://"));
    let client_tls = if secure {
        let acceptor =
            oxcd::tls::Acceptor::new(&cfg.client_tls, &cfg.tls).map_err(oxcd::Error::Internal)?;
        Some(std::sync::Arc::new(acceptor))
    } else {
        None
    };
    let peer_tls = if cfg
        .listen_peer_urls
        .iter()
        .any(|u| u.starts_with("https://"))
    {
        let acceptor = oxcd::tls::Acceptor::for_peers(&cfg.peer_tls, &cfg.tls)
            .map_err(oxcd::Error::Internal)?;
        Some(std::sync::Arc::new(acceptor))
    } else {
        None
    };
    if !cfg.peer_tls.trusted_ca_file.is_empty() {
        let dial =
            oxcd::tls::client_config(&cfg.peer_tls, &cfg.tls).map_err(oxcd::Error::Internal)?;
        oxcd::peer::set_dial_tls(dial);
    }
    let server = oxcd::server::Server::open(cfg.server_config()).await?;
    oxcd::api::serve_peers(server.clone(), peer_listeners, peer_tls);
    server.ready().await?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("received signal; shutting down");
        stop.cancel();
    });
    let serving = oxcd::api::serve(
        server.clone(),
        listeners,
        metrics_listeners,
        client_tls,
        shutdown.clone(),
    );
    tokio::pin!(serving);
    let result = tokio::select! {
        r = &mut serving => r,
        // Open streams (watches, keep-alives) never end by themselves:
        // like etcd, drain them for at most the request timeout, then stop.
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(server.config().request_timeout()).await;
        } => {
            tracing::warn!("streams still open after the drain timeout; closing them");
            Ok(())
        }
    };
    server.shutdown();
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the signal's
        // default action.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
