//! Points in G's input space and paths between them, shared by `ratlip generate`,
//! `interpolate`, `compare` and the app, so all of them name the same noise the same way.

use crate::rng::Rng;

/// The noise of image `index` of `ratlip generate --seed SEED`: each image has its own
/// stream, so image i does not depend on how many images are made or the batch size.
pub fn seed_noise(seed: u64, index: u64, z_dim: usize) -> Vec<f32> {
    Rng::stream(seed, index).normals(z_dim)
}

/// Spherical interpolation from `a` (t = 0) to `b` (t = 1). Gaussian noise of high dimension
/// lies near a sphere; a straight line between two samples cuts through its inside, where G
/// saw no training noise, and gives washed-out middle images. When the vectors are (nearly)
/// parallel or opposite the great circle is ill-defined and sin Ω ≈ 0, so it falls back to a
/// straight line.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = if na > 0.0 && nb > 0.0 { (dot / (na * nb)).clamp(-1.0, 1.0) } else { 1.0 };
    if cos.abs() > 0.9995 {
        return lerp(a, b, t);
    }
    let omega = cos.acos();
    let (wa, wb) = (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin());
    a.iter().zip(b).map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32).collect()
}

pub fn lerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| ((1.0 - t) * x as f64 + t * y as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn slerp_hits_the_endpoints_exactly() {
        let a = Rng::new(1).normals(64);
        let b = Rng::new(2).normals(64);
        assert_eq!(slerp(&a, &b, 0.0), a);
        assert_eq!(slerp(&a, &b, 1.0), b);
        assert_eq!(lerp(&a, &b, 0.0), a);
        assert_eq!(lerp(&a, &b, 1.0), b);
    }

    #[test]
    fn slerp_keeps_unit_vectors_on_the_sphere() {
        let unit = |v: Vec<f32>| {
            let n = norm(&v) as f32;
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let a = unit(Rng::new(3).normals(128));
        let b = unit(Rng::new(4).normals(128));
        for i in 0..=10 {
            let t = i as f64 / 10.0;
            let n = norm(&slerp(&a, &b, t));
            assert!((n - 1.0).abs() < 1e-5, "t {t}: norm {n}");
        }
        // A straight line would sag inside: that is the point of slerp.
        assert!(norm(&lerp(&a, &b, 0.5)) < 0.9);
        // Orthogonal unit vectors: halfway is at 45° from each.
        let (x, y) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let h = slerp(&x, &y, 0.5);
        assert!((h[0] - 0.5f32.sqrt()).abs() < 1e-6 && (h[1] - 0.5f32.sqrt()).abs() < 1e-6, "{h:?}");
    }

    #[test]
    fn slerp_falls_back_to_lerp_when_parallel() {
        let a = vec![1.0f32, 2.0, 3.0];
        let b = vec![2.0f32, 4.0, 6.0];
        assert_eq!(slerp(&a, &b, 0.5), lerp(&a, &b, 0.5));
        let neg: Vec<f32> = a.iter().map(|x| -x).collect();
        let mid = slerp(&a, &neg, 0.5);
        assert!(mid.iter().all(|x| x.is_finite() && x.abs() < 1e-6), "{mid:?}");
        let zero = vec![0.0f32; 3];
        assert_eq!(slerp(&zero, &a, 0.25), lerp(&zero, &a, 0.25));
        let same = slerp(&a, &a, 0.3);
        assert!(same.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-6) && same.iter().all(|x| x.is_finite()));
    }
}
