//! `sonar ping`: ping(8) for WebSocket.

/// Runs `sonar ping`.
pub(crate) fn run(_args: crate::args::PingArgs) -> Result<std::process::ExitCode, crate::Failure> {
    Err(crate::Failure::new("ping is not implemented yet"))
}
