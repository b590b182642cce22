//! Ctrl-C (SIGINT) and SIGTERM as a future, for every runtime.

use futures_channel::oneshot;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Failure;

/// Starts watching SIGINT and SIGTERM; the receiver resolves with the name of the first one.
/// A second signal ends the process at once with exit code 1 (the user insists).
pub(crate) fn shutdown_signal() -> Result<oneshot::Receiver<&'static str>, Failure> {
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::new(format!("cannot install signal handlers: {e}")))?;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("sonar-signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(name);
                    }
                    None => std::process::exit(1),
                }
            }
        })
        .map_err(|e| Failure::new(format!("cannot start the signal thread: {e}")))?;
    Ok(rx)
}
