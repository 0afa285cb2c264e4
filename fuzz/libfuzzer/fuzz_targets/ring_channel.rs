#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| capnet_fuzz::rings::ring_channel(data));
