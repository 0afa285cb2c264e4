//! `scripts/plots.py` draws the `conns` bench's output: one line per series,
//! every level on it, in SVG that parses.

use capnet_tests::Scratch;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn plots_draw_every_series_of_the_conns_bench() {
    let scratch = Scratch::new("plots");
    let level = |conns: u32, p50: f64| {
        serde_json::json!({
            "conns": conns, "connects_per_s": 1000.0, "p50_us": p50, "p99_us": p50 * 2.0,
            "netsrv_cpu_us_per_round_trip": 100.0, "netsrv_rss_kib_per_end": 12.0,
            "round_trip_percentiles_us": (0..=100).map(|p| p50 * (0.5 + f64::from(p) / 100.0)).collect::<Vec<_>>(),
        })
    };
    let results = serde_json::json!({
        "capnet": [level(10, 190.0), level(1000, 195.0), level(10000, 200.0)],
        "linux": [level(10, 70.0), level(1000, 71.0), level(9900, 72.0)],
        "tap": [level(10, 120.0), level(1000, 125.0), level(10000, 130.0)],
    });
    let input = scratch.0.join("results");
    let output = scratch.0.join("plots");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("conns.json"), results.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/plots.py");
    let run = Command::new("python3")
        .arg(script)
        .arg(&input)
        .arg(&output)
        .output()
        .expect("python3");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cost = std::fs::read_to_string(output.join("conns-cost.svg")).unwrap();
    assert_eq!(
        cost.matches("<polyline").count(),
        4,
        "capnet p50, netsrv CPU, TAP p50, Linux p50"
    );
    assert_eq!(cost.matches("<circle").count(), 12, "three levels each");
    let cdf = std::fs::read_to_string(output.join("conns-latency-cdf.svg")).unwrap();
    assert_eq!(
        cdf.matches("<polyline").count(),
        9,
        "a CDF per level and side"
    );
    for svg in [&cost, &cdf] {
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
