// A fused LSTM layer's sequential loops on the CPU, as XLA FFI custom calls (prototype).
//
// Each call runs a whole sequence: per time step the recurrent product and the cell's elementwise maths. The
// hidden units are split between the OpenMP threads; a thread owns units [j0, j0 + u) and the 4u gate columns
// that feed them, so it multiplies h_{t-1} by its own packed slice of W_hh (an AVX-512 register-tiled kernel) and runs
// the cell for its units. The threads meet once per step (h_t must be whole before step t+1's product); the
// layer-normalised cell also meets for each row statistic (combined from per-thread means and M2s).
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

namespace {

inline float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// C[M, N] = A[M, K] @ Bp, with B packed in panels of 32 columns ([N/32][K][32], see `pack_panels`): each panel
// of 8 rows keeps 16 AVX-512 accumulators in registers over the whole K.
template <int MR>
inline void tile(int64_t K, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp + k * 32), b1 = _mm512_loadu_ps(bp + k * 32 + 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[r][0]);
    _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
  }
}

template <int MR>
void tiles(int64_t rows, int64_t N, int64_t K, const float* a, int64_t lda, const float* bp, float* c,
           int64_t ldc) {
  for (int64_t p = 0; p < N / 32; ++p) tile<MR>(K, a, lda, bp + p * K * 32, c + p * 32, ldc);
}

// SKIP_GEMM=1 times the loops without their products (how the elementwise share was measured).
static const bool kSkipGemm = getenv("SKIP_GEMM") != nullptr;
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bp, float* C, int64_t ldc) {
  if (kSkipGemm) return;
  int64_t r = 0;
  for (; r + 8 <= M; r += 8) tiles<8>(8, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc);
  switch (M - r) {
    case 7: tiles<7>(7, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 6: tiles<6>(6, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 5: tiles<5>(5, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 4: tiles<4>(4, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 3: tiles<3>(3, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 2: tiles<2>(2, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    case 1: tiles<1>(1, N, K, A + r * lda, lda, Bp, C + r * ldc, ldc); break;
    default: break;
  }
}

// Packs the [K, N] matrix whose element (k, n) is at(k, n) into panels of 32 columns.
template <class F>
void pack_panels(int64_t K, int64_t N, F at, float* out) {
  for (int64_t p = 0; p < N / 32; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < 32; ++j) out[(p * K + k) * 32 + j] = at(k, p * 32 + j);
}

struct Split {
  int nthr, tid;
  int64_t u, j0;
};

inline Split split(int64_t H) {
  int nthr = omp_get_num_threads(), tid = omp_get_thread_num();
  return {nthr, tid, H / nthr, tid * (H / nthr)};
}

// The thread's slice of W_hh [H, 4H] for the forward product: columns k*H + j0 .. k*H + j0 + u of each gate k,
// as a [H, 4u] matrix in panels.
void pack_forward(const float* w, int64_t H, const Split& s, float* out) {
  pack_panels(H, 4 * s.u, [&](int64_t r, int64_t n) { return w[r * 4 * H + (n / s.u) * H + s.j0 + n % s.u]; }, out);
}

// ... and for the backward product dh[:, j0:j0+u] = dz [B, 4H] @ W_hh[j0:j0+u, :]^T: a [4H, u] matrix in panels.
void pack_backward(const float* w, int64_t H, const Split& s, float* out) {
  pack_panels(4 * H, s.u, [&](int64_t k, int64_t n) { return w[(s.j0 + n) * 4 * H + k]; }, out);
}

// Per-row mean and M2 over n values, combined across threads (Chan et al.): every thread gets the row's mean and
// reciprocal standard deviation over the whole row. part holds [nthr][B][3] (count, mean, M2).
void row_stats(const float* x, int64_t ldx, int64_t n, int64_t B, const Split& s, std::vector<double>& part,
               float* mean, float* rs, int64_t total) {
  for (int64_t b = 0; b < B; ++b) {
    const float* r = x + b * ldx;
    float m = 0.f;
    for (int64_t j = 0; j < n; ++j) m += r[j];
    m /= n;
    float m2 = 0.f;
    for (int64_t j = 0; j < n; ++j) m2 += (r[j] - m) * (r[j] - m);
    double* p = &part[(s.tid * B + b) * 3];
    p[0] = n, p[1] = m, p[2] = m2;
  }
#pragma omp barrier
  for (int64_t b = 0; b < B; ++b) {
    double cnt = 0, mu = 0, M2 = 0;
    for (int t = 0; t < s.nthr; ++t) {
      const double* p = &part[(t * B + b) * 3];
      double n2 = cnt + p[0], d = p[1] - mu;
      mu += d * p[0] / n2;
      M2 += p[2] + d * d * cnt * p[0] / n2;
      cnt = n2;
    }
    mean[b] = (float)mu;
    rs[b] = 1.0f / std::sqrt((float)(M2 / total) + 1e-5f);
  }
#pragma omp barrier  // part is reused by the next statistic
}

// Sums over the row of a and a*n (for the layer-norm backward), combined across threads: part [nthr][B][2].
void row_sums(const float* a, const float* n, int64_t ld, int64_t cols, int64_t B, const Split& s,
              std::vector<double>& part, float* ma, float* man, int64_t total) {
  for (int64_t b = 0; b < B; ++b) {
    float x = 0.f, y = 0.f;
    for (int64_t j = 0; j < cols; ++j) x += a[b * ld + j], y += a[b * ld + j] * n[b * ld + j];
    part[(s.tid * B + b) * 2] = x, part[(s.tid * B + b) * 2 + 1] = y;
  }
#pragma omp barrier
  for (int64_t b = 0; b < B; ++b) {
    double x = 0, y = 0;
    for (int t = 0; t < s.nthr; ++t) x += part[(t * B + b) * 2], y += part[(t * B + b) * 2 + 1];
    ma[b] = (float)(x / total), man[b] = (float)(y / total);
  }
#pragma omp barrier
}

struct Ln {  // the layer-normalised cell's extra inputs and residuals (null for the plain cell)
  const float *gain_hh = nullptr, *gain_c = nullptr, *b_c = nullptr;
  float *n_a = nullptr, *rs_a = nullptr, *n_c = nullptr, *rs_c = nullptr, *t_u = nullptr;
};

// Forward: h, c [T, B, H], gates [T, B, 4H] (i, f, g, o activations), and the layer-norm residuals.
void forward(const float* w, const float* xw, const float* h0, const float* c0, const float* mask, int64_t T,
             int64_t B, int64_t H, float* hs, float* cs, float* gates, Ln ln) {
  const int64_t G = 4 * H;
  std::vector<float> hm(2 * B * H);  // masked h_{t-1}, double-buffered: step t reads one and writes the other
  for (int64_t k = 0; k < B * H; ++k) hm[k] = h0[k] * mask[k];
  std::vector<double> part(omp_get_max_threads() * B * 3);
#pragma omp parallel
  {
    Split s = split(H);
    std::vector<float> mean_a(B), rs_a(B), mean_c(B), rs_c(B);  // every thread computes the same values
    std::vector<float> wt(H * 4 * s.u), z(B * 4 * s.u), cn(B * s.u);
    pack_forward(w, H, s, wt.data());
    for (int64_t t = 0; t < T; ++t) {
      const float* hp = hm.data() + (t % 2) * B * H;
      float* hn = hm.data() + ((t + 1) % 2) * B * H;
      gemm(B, 4 * s.u, H, hp, H, wt.data(), z.data(), 4 * s.u);
      if (ln.gain_hh) {  // z holds this thread's columns of a = h W_hh: normalise over the whole 4H row
        row_stats(z.data(), 4 * s.u, 4 * s.u, B, s, part, mean_a.data(), rs_a.data(), G);
        if (s.tid == 0)
          for (int64_t b = 0; b < B; ++b) ln.rs_a[t * B + b] = rs_a[b];
      }
      for (int64_t b = 0; b < B; ++b) {
        const float* x = xw + (t * B + b) * G;
        float* gt = gates + (t * B + b) * G;
        float* zr = z.data() + b * 4 * s.u;
        for (int k = 0; k < 4; ++k) {
          const int64_t col = k * H + s.j0;
          if (ln.gain_hh) {
            float* na = ln.n_a + (t * B + b) * G + col;
            for (int64_t j = 0; j < s.u; ++j) {
              na[j] = (zr[k * s.u + j] - mean_a[b]) * rs_a[b];
              zr[k * s.u + j] = na[j] * ln.gain_hh[col + j];
            }
          }
          for (int64_t j = 0; j < s.u; ++j) {
            float v = zr[k * s.u + j] + x[col + j];
            gt[col + j] = k == 2 ? std::tanh(v) : sigm(v);
          }
        }
        const float* cp = t == 0 ? c0 + b * H : cs + ((t - 1) * B + b) * H;
        float* cr = cs + (t * B + b) * H;
        for (int64_t j = s.j0; j < s.j0 + s.u; ++j) cr[j] = gt[H + j] * cp[j] + gt[j] * gt[2 * H + j];
      }
      if (ln.gain_hh) {
        // the cell state's statistics over H: this thread's units of every row, copied contiguously
        for (int64_t b = 0; b < B; ++b) std::memcpy(cn.data() + b * s.u, cs + (t * B + b) * H + s.j0, s.u * 4);
        row_stats(cn.data(), s.u, s.u, B, s, part, mean_c.data(), rs_c.data(), H);
        if (s.tid == 0)
          for (int64_t b = 0; b < B; ++b) ln.rs_c[t * B + b] = rs_c[b];
      }
      for (int64_t b = 0; b < B; ++b) {
        const float* gt = gates + (t * B + b) * G;
        const float* cr = cs + (t * B + b) * H;
        float* hr = hs + (t * B + b) * H;
        float* hnr = hn + b * H;
        const float* mr = mask + b * H;
        if (ln.gain_hh) {
          float* nc = ln.n_c + (t * B + b) * H;
          float* tu = ln.t_u + (t * B + b) * H;
          for (int64_t j = s.j0; j < s.j0 + s.u; ++j) {
            nc[j] = (cr[j] - mean_c[b]) * rs_c[b];
            tu[j] = std::tanh(nc[j] * ln.gain_c[j] + ln.b_c[j]);
            hr[j] = gt[3 * H + j] * tu[j];
            hnr[j] = hr[j] * mr[j];
          }
        } else {
          for (int64_t j = s.j0; j < s.j0 + s.u; ++j) {
            hr[j] = gt[3 * H + j] * std::tanh(cr[j]);
            hnr[j] = hr[j] * mr[j];
          }
        }
      }
#pragma omp barrier
    }
  }
}

struct LnBack {  // the layer-normalised cell's residuals and gradient outputs (null for the plain cell)
  const float *gain_hh = nullptr, *gain_c = nullptr, *n_a = nullptr, *rs_a = nullptr, *n_c = nullptr,
              *rs_c = nullptr, *t_u = nullptr;
  float *da = nullptr, *du = nullptr;
};

// Backward: dz [T, B, 4H] (gradient of the gate pre-activations), dh0, dc0; for the layer-normalised cell also
// da (gradient of the raw recurrent product) and du (of the output tanh's argument).
void backward(const float* w, const float* d_hs, const float* d_hT, const float* d_cT, const float* gates,
              const float* cs, const float* c0, const float* mask, int64_t T, int64_t B, int64_t H, float* dz,
              float* dh0, float* dc0, LnBack ln) {
  const int64_t G = 4 * H;
  std::vector<float> dh_next(d_hT, d_hT + B * H), dc_next(d_cT, d_cT + B * H);
  std::vector<float> dh_prev(B * H);
  std::vector<double> part(omp_get_max_threads() * B * 2);
  std::vector<float> dcn(B * H);  // du * gain_c (layer norm), by unit
#pragma omp parallel
  {
    Split s = split(H);
    std::vector<float> m1(B), m2(B), tmp(B * 4 * s.u), nrm(B * 4 * s.u), wt(4 * H * s.u);
    std::vector<float> rowh(H), rowc(H), rowt(H);
    pack_backward(w, H, s, wt.data());
    for (int64_t t = T - 1; t >= 0; --t) {
      if (ln.gain_hh) {
        for (int64_t b = 0; b < B; ++b) {
          const float* gt = gates + (t * B + b) * G;
          const float* tu = ln.t_u + (t * B + b) * H;
          float* du = ln.du + (t * B + b) * H;
          for (int64_t j = s.j0; j < s.j0 + s.u; ++j) {
            float dh = d_hs[(t * B + b) * H + j] + dh_next[b * H + j];
            dh_next[b * H + j] = dh;
            du[j] = dh * gt[3 * H + j] * (1.f - tu[j] * tu[j]);
            dcn[b * H + j] = du[j] * ln.gain_c[j];
          }
        }
        row_sums(dcn.data() + s.j0, ln.n_c + t * B * H + s.j0, H, s.u, B, s, part, m1.data(), m2.data(), H);
      }
      for (int64_t b = 0; b < B; ++b) {
        const float* __restrict gt = gates + (t * B + b) * G;
        const float* __restrict cr = cs + (t * B + b) * H;
        const float* __restrict cp = t == 0 ? c0 + b * H : cs + ((t - 1) * B + b) * H;
        float* __restrict dzr = dz + (t * B + b) * G;
        float* __restrict dhr = dh_next.data() + b * H;
        float* __restrict dcr = dc_next.data() + b * H;
        float* __restrict dhv = rowh.data();
        float* __restrict dcv = rowc.data();
        float* __restrict tcv = rowt.data();
        const int64_t j0 = s.j0, j1 = s.j0 + s.u;
        if (ln.gain_hh) {
          const float* __restrict nc = ln.n_c + (t * B + b) * H;
          const float* __restrict tu = ln.t_u + (t * B + b) * H;
          const float* __restrict dn = dcn.data() + b * H;
          const float r = ln.rs_c[t * B + b], a1 = m1[b], a2 = m2[b];
          for (int64_t j = j0; j < j1; ++j) {
            dhv[j] = dhr[j];
            tcv[j] = tu[j];
            dcv[j] = dcr[j] + r * (dn[j] - a1 - nc[j] * a2);
          }
        } else {
          const float* __restrict dho = d_hs + (t * B + b) * H;
          for (int64_t j = j0; j < j1; ++j) {
            const float dh = dho[j] + dhr[j], tc = std::tanh(cr[j]);
            dhv[j] = dh;
            tcv[j] = tc;
            dcv[j] = dcr[j] + dh * gt[3 * H + j] * (1.f - tc * tc);
          }
        }
        for (int64_t j = j0; j < j1; ++j) {
          const float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j], dc = dcv[j];
          dzr[j] = dc * g * i * (1.f - i);
          dzr[H + j] = dc * cp[j] * f * (1.f - f);
          dzr[2 * H + j] = dc * i * (1.f - g * g);
          dzr[3 * H + j] = dhv[j] * tcv[j] * o * (1.f - o);
          dcr[j] = dc * f;
        }
      }
      const float* back = dz + t * B * G;  // what multiplies W_hh^T
      if (ln.gain_hh) {
        float* dar = ln.da + t * B * G;
        for (int64_t b = 0; b < B; ++b)
          for (int k = 0; k < 4; ++k)
            for (int64_t j = 0; j < s.u; ++j) {
              const int64_t col = (t * B + b) * G + k * H + s.j0 + j;
              tmp[b * 4 * s.u + k * s.u + j] = dz[col] * ln.gain_hh[k * H + s.j0 + j];
              nrm[b * 4 * s.u + k * s.u + j] = ln.n_a[col];
            }
        row_sums(tmp.data(), nrm.data(), 4 * s.u, 4 * s.u, B, s, part, m1.data(), m2.data(), G);
        for (int64_t b = 0; b < B; ++b)
          for (int k = 0; k < 4; ++k)
            for (int64_t j = 0; j < s.u; ++j) {
              const int64_t q = b * 4 * s.u + k * s.u + j;
              dar[b * G + k * H + s.j0 + j] = ln.rs_a[t * B + b] * (tmp[q] - m1[b] - nrm[q] * m2[b]);
            }
        back = dar;
      }
#pragma omp barrier  // every unit's gradient of this step is written: dh_{t-1} = back @ W_hh^T
      // dh_prev[:, j0:j0+u] = back[B, 4H] @ W_hh[j0:j0+u, :]^T
      gemm(B, s.u, G, back, G, wt.data(), dh_prev.data() + s.j0, H);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = s.j0; j < s.j0 + s.u; ++j) dh_next[b * H + j] = dh_prev[b * H + j] * mask[b * H + j];
      // the next (earlier) step reads only this thread's units of dh_next and dc_next: no second barrier
    }
  }
  std::memcpy(dh0, dh_next.data(), B * H * 4);
  std::memcpy(dc0, dc_next.data(), B * H * 4);
}

int64_t dim(const F32& b, int i) { return b.dimensions()[i]; }

ffi::Error LstmFwd(F32 w, F32 xw, F32 h0, F32 c0, F32 mask, Out hs, Out cs, Out gates) {
  forward(w.typed_data(), xw.typed_data(), h0.typed_data(), c0.typed_data(), mask.typed_data(), dim(xw, 0),
          dim(xw, 1), dim(h0, 1), hs->typed_data(), cs->typed_data(), gates->typed_data(), Ln{});
  return ffi::Error::Success();
}

ffi::Error LnLstmFwd(F32 w, F32 gain_hh, F32 gain_c, F32 b_c, F32 xw, F32 h0, F32 c0, F32 mask, Out hs, Out cs,
                     Out gates, Out n_a, Out rs_a, Out n_c, Out rs_c, Out t_u) {
  Ln ln{gain_hh.typed_data(), gain_c.typed_data(), b_c.typed_data(), n_a->typed_data(), rs_a->typed_data(),
        n_c->typed_data(),    rs_c->typed_data(),   t_u->typed_data()};
  forward(w.typed_data(), xw.typed_data(), h0.typed_data(), c0.typed_data(), mask.typed_data(), dim(xw, 0),
          dim(xw, 1), dim(h0, 1), hs->typed_data(), cs->typed_data(), gates->typed_data(), ln);
  return ffi::Error::Success();
}

ffi::Error LstmBwd(F32 w, F32 d_hs, F32 d_hT, F32 d_cT, F32 gates, F32 cs, F32 c0, F32 mask, Out dz, Out dh0,
                   Out dc0) {
  backward(w.typed_data(), d_hs.typed_data(), d_hT.typed_data(), d_cT.typed_data(), gates.typed_data(),
           cs.typed_data(), c0.typed_data(), mask.typed_data(), dim(d_hs, 0), dim(d_hs, 1), dim(d_hs, 2),
           dz->typed_data(), dh0->typed_data(), dc0->typed_data(), LnBack{});
  return ffi::Error::Success();
}

ffi::Error LnLstmBwd(F32 w, F32 gain_hh, F32 gain_c, F32 d_hs, F32 d_hT, F32 d_cT, F32 gates, F32 cs, F32 c0,
                     F32 n_a, F32 rs_a, F32 n_c, F32 rs_c, F32 t_u, F32 mask, Out dz, Out da, Out du, Out dh0,
                     Out dc0) {
  LnBack ln{gain_hh.typed_data(), gain_c.typed_data(), n_a.typed_data(),  rs_a.typed_data(),
            n_c.typed_data(),     rs_c.typed_data(),   t_u.typed_data(),  da->typed_data(),
            du->typed_data()};
  backward(w.typed_data(), d_hs.typed_data(), d_hT.typed_data(), d_cT.typed_data(), gates.typed_data(),
           cs.typed_data(), c0.typed_data(), mask.typed_data(), dim(d_hs, 0), dim(d_hs, 1), dim(d_hs, 2),
           dz->typed_data(), dh0->typed_data(), dc0->typed_data(), ln);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(charlstm_lstm_fwd, LstmFwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(charlstm_ln_lstm_fwd, LnLstmFwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>()
                                  .Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(charlstm_lstm_bwd, LstmBwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(charlstm_ln_lstm_bwd, LnLstmBwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>());
