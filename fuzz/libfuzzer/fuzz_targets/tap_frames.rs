#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| capnet_fuzz::frames::tap_frames(data));
