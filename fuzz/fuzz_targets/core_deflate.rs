//! Fuzz `Connection::handle_read` with permessage-deflate negotiated, both roles (the first
//! input byte picks the role; the harness is `sonar_fuzz::core_harness::run_deflate`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonar_core::Role;

fuzz_target!(|data: &[u8]| {
    let Some((&role, rest)) = data.split_first() else {
        return;
    };
    let role = if role & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    sonar_fuzz::core_harness::run_deflate(role, rest);
});
