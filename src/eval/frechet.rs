//! Fréchet distance between two Gaussians fitted to feature sets (FID's formula):
//! d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), all in f64.
//!
//! tr((Σ₁Σ₂)^½) is computed as Σ √λᵢ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same
//! eigenvalues as Σ₁Σ₂), with symmetric square roots from a Jacobi eigensolver, so there is
//! no complex arithmetic and no scipy-style `sqrtm` error to hide: eigenvalues that rounding
//! makes slightly negative are clamped to 0.

use crate::error::{Error, Result};

/// Mean and covariance (divided by n − 1, as numpy's `np.cov`) of `n` rows of width `d`.
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub n: usize,
    pub mean: Vec<f64>,
    /// Row-major d × d.
    pub cov: Vec<f64>,
}

impl Gaussian {
    pub fn fit(rows: &[Vec<f32>]) -> Result<Gaussian> {
        let n = rows.len();
        if n < 2 {
            return Err(Error::Other(format!("a covariance needs at least 2 samples, got {n}")));
        }
        let d = rows[0].len();
        if rows.iter().any(|r| r.len() != d) {
            return Err(Error::Other("feature rows of different widths".into()));
        }
        let mut mean = vec![0f64; d];
        for r in rows {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; d * d];
        for r in rows {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect();
            for i in 0..d {
                for j in i..d {
                    cov[i * d + j] += c[i] * c[j];
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                let v = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        Ok(Gaussian { n, mean, cov })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric
/// matrix, by cyclic Jacobi rotations; converges quadratically, fine for d ≤ a few hundred.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d).flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * d + j].powi(2)).sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i].powi(2)).sum::<f64>().max(1e-300);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// The symmetric PSD square root V diag(√max(λ, 0)) Vᵀ.
pub fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (lambda, v) = symmetric_eigen(a, d);
    let mut out = vec![0f64; d * d];
    for k in 0..d {
        let s = lambda[k].max(0.0).sqrt();
        if s == 0.0 {
            continue;
        }
        for i in 0..d {
            let vik = v[i * d + k] * s;
            for j in 0..d {
                out[i * d + j] += vik * v[j * d + k];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// d² between the two Gaussians (the number FID reports).
pub fn frechet_distance(x: &Gaussian, y: &Gaussian) -> Result<f64> {
    let d = x.dim();
    if y.dim() != d {
        return Err(Error::Other(format!("Fréchet distance between {d}- and {}-dimensional features", y.dim())));
    }
    let mean_term: f64 = x.mean.iter().zip(&y.mean).map(|(a, b)| (a - b).powi(2)).sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let s1 = sqrt_psd(&x.cov, d);
    let mut m = matmul(&matmul(&s1, &y.cov, d), &s1, d);
    // Symmetrise away rounding before the eigensolver.
    for i in 0..d {
        for j in i + 1..d {
            let s = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = s;
            m[j * d + i] = s;
        }
    }
    let (lambda, _) = symmetric_eigen(&m, d);
    let cross: f64 = lambda.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok(mean_term + trace(&x.cov) + trace(&y.cov) - 2.0 * cross)
}
