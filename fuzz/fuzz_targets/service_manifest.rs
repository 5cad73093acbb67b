//! One Service manifest file of arbitrary bytes: diagnostics are fine, a panic is not.

#![no_main]

use ferrolb_core::service;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = service::load([("s.yaml", data)]);
});
