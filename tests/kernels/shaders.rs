//! Every file in shaders/ parses and validates with naga, as wgpu will at pipeline creation.

#[test]
fn every_shader_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap();
        if let Err(e) = ratlip::gpu::validate_wgsl(name, &src) {
            panic!("{e}");
        }
        n += 1;
    }
    assert!(n > 0, "no shaders found in {dir:?}");
}

#[test]
fn broken_shader_is_reported_with_its_name() {
    let err = ratlip::gpu::validate_wgsl("broken", "fn main( {").unwrap_err().to_string();
    assert!(err.contains("shaders/broken.wgsl"), "{err}");
}
