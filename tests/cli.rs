//! The `ratlip` binary as users run it.

use std::process::Command;

fn ratlip(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ratlip"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = ratlip(&["--help"], &[]);
    assert_eq!(code, 0);
    for cmd in ["info", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn info_reports_adapter_limits_and_features() {
    let (code, out, err) = ratlip(&["info"], &[]);
    assert_eq!(code, 0, "{err}");
    for field in ["adapter:", "backend:", "driver:", "max_storage_buffer_binding_size", "shader f16:", "subgroups:"] {
        assert!(out.contains(field), "missing {field} in\n{out}");
    }
}

#[test]
fn unknown_adapter_lists_the_available_ones() {
    let (code, _, err) = ratlip(&["info", "--adapter", "no-such-gpu-xyz"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no-such-gpu-xyz") && err.contains("available adapters"), "{err}");
    let (code, _, err) = ratlip(&["info"], &[("RATLIP_ADAPTER", "no-such-gpu-xyz")]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn no_adapter_says_how_to_get_one() {
    // Only the Metal backend on a machine without Metal: no adapter at all.
    if cfg!(target_os = "macos") {
        return;
    }
    let (code, _, err) = ratlip(&["info"], &[("WGPU_BACKEND", "metal")]);
    assert_eq!(code, 1);
    assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
