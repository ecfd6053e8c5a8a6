package gateway

import "testing"

func TestRingQuantile(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		samples []float64
		q       float64
		want    float64
	}{
		{"empty", 4, nil, 0.5, 0},
		{"one", 4, []float64{3}, 0.99, 3},
		{"median of 1..5", 8, []float64{5, 1, 4, 2, 3}, 0.5, 3},
		{"p95 of 1..100", 100, seq(100), 0.95, 95},
		{"p99 of 1..100", 100, seq(100), 0.99, 99},
		{"only the last samples count", 3, []float64{100, 100, 100, 1, 2, 3}, 0.99, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(tc.size)
			for _, v := range tc.samples {
				r.add(v)
			}
			if got := r.quantile(tc.q); got != tc.want {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(n - i)
	}
	return out
}
