//! Ordinary least squares by the normal equations with partial-pivot Gaussian elimination —
//! enough for HAR-RV's handful of regressors.

/// The regression could not be solved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OlsError {
    #[error("OLS needs more rows ({rows}) than coefficients ({cols})")]
    TooFewRows { rows: usize, cols: usize },
    #[error("OLS design matrix is singular (collinear or constant regressors)")]
    Singular,
}

/// Least-squares coefficients `b` minimising `|y - X b|²`, where each row of `x` is one
/// observation (include a column of ones for an intercept).
pub fn ols(x: &[Vec<f64>], y: &[f64]) -> Result<Vec<f64>, OlsError> {
    let rows = x.len();
    let cols = x.first().map_or(0, Vec::len);
    if rows <= cols || cols == 0 {
        return Err(OlsError::TooFewRows { rows, cols });
    }
    // Augmented normal equations [X'X | X'y].
    let mut a = vec![vec![0.0; cols + 1]; cols];
    for (row, &yi) in x.iter().zip(y) {
        for i in 0..cols {
            for j in 0..cols {
                a[i][j] += row[i] * row[j];
            }
            a[i][cols] += row[i] * yi;
        }
    }
    for col in 0..cols {
        let pivot = (col..cols)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        let scale = a.iter().map(|r| r[col].abs()).fold(0.0, f64::max).max(1.0);
        if a[pivot][col].abs() < 1e-12 * scale {
            return Err(OlsError::Singular);
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate().take(cols) {
            if r != col {
                let factor = row[col] / pivot_row[col];
                for (x, p) in row[col..=cols].iter_mut().zip(&pivot_row[col..=cols]) {
                    *x -= factor * p;
                }
            }
        }
    }
    Ok((0..cols).map(|i| a[i][cols] / a[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_coefficients() {
        // y = 1 + 2 a - 3 b, exactly.
        let pts = [(0.0, 1.0), (1.0, 0.0), (2.0, 5.0), (3.0, 1.0), (4.0, 2.0)];
        let x: Vec<Vec<f64>> = pts.iter().map(|&(a, b)| vec![1.0, a, b]).collect();
        let y: Vec<f64> = pts.iter().map(|&(a, b)| 1.0 + 2.0 * a - 3.0 * b).collect();
        let b = ols(&x, &y).unwrap();
        for (got, want) in b.iter().zip([1.0, 2.0, -3.0]) {
            assert!((got - want).abs() < 1e-9);
        }
    }

    #[test]
    fn least_squares_by_hand() {
        // Simple regression through (0,0),(1,1),(2,1): slope 0.5, intercept 1/6.
        let x = vec![vec![1.0, 0.0], vec![1.0, 1.0], vec![1.0, 2.0]];
        let b = ols(&x, &[0.0, 1.0, 1.0]).unwrap();
        assert!((b[0] - 1.0 / 6.0).abs() < 1e-12);
        assert!((b[1] - 0.5).abs() < 1e-12);
        let collinear = vec![vec![1.0, 2.0], vec![1.0, 2.0], vec![1.0, 2.0]];
        assert_eq!(ols(&collinear, &[1.0, 2.0, 3.0]), Err(OlsError::Singular));
    }
}
