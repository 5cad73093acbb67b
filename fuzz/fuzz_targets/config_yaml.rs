//! One configuration file of arbitrary bytes, parsed and validated as a set: diagnostics are
//! fine, a panic is not.

#![no_main]

use ferrolb_core::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = config::parse_file("f.yaml", data);
    let _ = config::validate(std::slice::from_ref(&raw));
});
