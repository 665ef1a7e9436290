#include "lstm_ffi.cc"
#include <chrono>
#include <cstdio>
using clk = std::chrono::steady_clock;
int main() {
  int64_t T = 100, B = 64, H = 256, G = 4 * H;
  std::vector<float> w(H * G, 0.01f), xw(T * B * G, 0.1f), h0(B * H), c0(B * H), m(B * H, 1.f), hs(T * B * H), cs(T * B * H), gates(T * B * G);
  std::vector<float> dz(T * B * G), dh0(B * H), dc0(B * H);
  for (int it = 0; it < 4; ++it) {
    auto t0 = clk::now();
    forward(w.data(), xw.data(), h0.data(), c0.data(), m.data(), T, B, H, hs.data(), cs.data(), gates.data(), Ln{});
    auto t1 = clk::now();
    backward(w.data(), hs.data(), h0.data(), c0.data(), gates.data(), cs.data(), c0.data(), m.data(), T, B, H, dz.data(), dh0.data(), dc0.data(), LnBack{});
    auto t2 = clk::now();
    // gemm only, the same per-thread shapes
    std::vector<float> wt(H * 4 * H / 2), z(B * 2 * H);
#pragma omp parallel
    {
      std::vector<float> zz(B * 2 * H), hh(B * H, 0.1f), wt2(H * 2 * H);
      for (int t = 0; t < T; ++t) {
        gemm(B, 2 * H, H, hh.data(), H, wt2.data(), zz.data(), 2 * H);
#pragma omp barrier
      }
    }
    auto t3 = clk::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    printf("fwd %.2f ms  bwd %.2f ms  gemm-only loop %.2f ms\n", ms(t0, t1), ms(t1, t2), ms(t2, t3));
  }
}
