//! Fuzz `Connection::handle_read` in the server role (the harness is `sonar_fuzz::core_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonar_core::Role;

fuzz_target!(|data: &[u8]| sonar_fuzz::core_harness::run(Role::Server, data));
