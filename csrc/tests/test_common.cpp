// Unit tests of the torch-free maths in csrc/ops/common/ (interval.h, nms.h, window_grad.h), run by
// ctest.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "ops/common/interval.h"
#include "ops/common/nms.h"
#include "ops/common/window_grad.h"

namespace {

int failures = 0;

void check(bool ok, const char* what, int line) {
  if (!ok) {
    std::fprintf(stderr, "FAIL line %d: %s\n", line, what);
    ++failures;
  }
}
#define CHECK(cond) check((cond), #cond, __LINE__)

using fian_fast::interval::intersection;
using fian_fast::interval::iou;
using fian_fast::interval::num_windows;
using fian_fast::interval::refine;
using fian_fast::nms::greedy_nms;
using fian_fast::nms::ranks_before;

void test_iou() {
  CHECK(intersection(0.0, 10.0, 5.0, 15.0) == 5.0);
  CHECK(intersection(0.0, 10.0, 10.0, 20.0) == 0.0);  // touching intervals do not overlap
  CHECK(intersection(0.0, 10.0, 12.0, 20.0) == 0.0);
  CHECK(iou(0.0, 4.0, 0.0, 2.0) == 0.5);
  CHECK(iou(0.0, 10.0, 5.0, 15.0) == 5.0 / 15.0);
  CHECK(iou(3.0f, 7.0f, 3.0f, 7.0f) == 1.0f);
  CHECK(iou(5.0, 5.0, 5.0, 5.0) == 0.0);  // empty union: 0, never NaN
  CHECK(iou(0.0, 1.0, 2.0, 3.0) == 0.0);
  CHECK(iou(0.0, 10.0, 2.0, 3.0) == iou(2.0, 3.0, 0.0, 10.0));
}

void test_windows() {
  CHECK(num_windows(200, 8, 1) == 193);
  CHECK(num_windows(200, 64, 8) == 18);
  CHECK(num_windows(200, 192, 48) == 1);
  CHECK(num_windows(10, 10, 3) == 1);
  CHECK(num_windows(10, 11, 1) == 0);
  // TACoS: windows [8, 16, 32, 64], strides k / 8 -> 347 candidates.
  CHECK(num_windows(200, 8, 1) + num_windows(200, 16, 2) + num_windows(200, 32, 4) + num_windows(200, 64, 8) == 347);
}

void test_refine() {
  double s, e;
  refine(10.0, 20.0, -2.0, 3.0, 100.0, &s, &e);
  CHECK(s == 8.0 && e == 23.0);
  refine(10.0, 20.0, 15.0, -15.0, 100.0, &s, &e);  // crossed: (25, 5) -> (5, 25)
  CHECK(s == 5.0 && e == 25.0);
  refine(10.0, 20.0, -30.0, 200.0, 50.0, &s, &e);  // clipped to [0, 50]
  CHECK(s == 0.0 && e == 50.0);
  refine(60.0, 70.0, 0.0, 0.0, 50.0, &s, &e);  // entirely past the end: empty at the end
  CHECK(s == 50.0 && e == 50.0);
}

std::vector<int64_t> run_nms(const std::vector<double>& scores, const std::vector<double>& seg, double threshold,
                             int64_t top_k, const bool* valid = nullptr) {
  const int64_t n = static_cast<int64_t>(scores.size());
  std::vector<int64_t> out(top_k), heap(n + 1);
  greedy_nms<double, double>(scores.data(), seg.data(), valid, n, threshold, top_k, out.data(), heap.data());
  return out;
}

void test_nms() {
  CHECK(ranks_before(2.0, 5, 1.0, 0));
  CHECK(ranks_before(1.0, 0, 1.0, 5));
  CHECK(!ranks_before(1.0, 5, 1.0, 0));
  CHECK(!ranks_before(1.0, 3, 1.0, 3));
  CHECK(ranks_before(-std::numeric_limits<double>::infinity(), 7, -std::numeric_limits<double>::infinity(), 8));

  // IoU([0, 4), [0, 2)) = 0.5 exactly: kept at threshold 0.5 (strict), suppressed below it.
  const std::vector<double> seg = {0, 4, 0, 2, 10, 12};
  auto keep = run_nms({0.9, 0.8, 0.1}, seg, 0.5, 3);
  CHECK(keep[0] == 0 && keep[1] == 1 && keep[2] == 2);
  keep = run_nms({0.9, 0.8, 0.1}, seg, 0.4999, 3);
  CHECK(keep[0] == 0 && keep[1] == 2 && keep[2] == -1);

  // Ties: equal scores rank by lower index; identical segments suppress the later index.
  keep = run_nms({0.5, 0.5, 0.5}, {0, 4, 0, 4, 0, 4}, 0.5, 3);
  CHECK(keep[0] == 0 && keep[1] == -1 && keep[2] == -1);
  keep = run_nms({0.5, 0.7, 0.7}, {0, 4, 5, 9, 10, 14}, 0.5, 3);
  CHECK(keep[0] == 1 && keep[1] == 2 && keep[2] == 0);

  // top_k truncates; invalid candidates are never kept; nothing valid -> all -1.
  keep = run_nms({0.1, 0.2, 0.3}, {0, 1, 2, 3, 4, 5}, 0.5, 2);
  CHECK(keep[0] == 2 && keep[1] == 1);
  const bool valid[3] = {true, false, false};
  keep = run_nms({0.1, 0.2, 0.3}, {0, 1, 2, 3, 4, 5}, 0.5, 3, valid);
  CHECK(keep[0] == 0 && keep[1] == -1 && keep[2] == -1);
  const bool none[3] = {false, false, false};
  keep = run_nms({0.1, 0.2, 0.3}, {0, 1, 2, 3, 4, 5}, 0.5, 2, none);
  CHECK(keep[0] == -1 && keep[1] == -1);
  keep = run_nms({}, {}, 0.5, 2);
  CHECK(keep[0] == -1 && keep[1] == -1);

  // Threshold 1: nothing is suppressed, not even identical segments (IoU 1 is not > 1).
  keep = run_nms({0.3, 0.2}, {0, 4, 0, 4}, 1.0, 2);
  CHECK(keep[0] == 0 && keep[1] == 1);
  // Threshold 0: any overlap suppresses, touching segments do not.
  keep = run_nms({0.3, 0.2, 0.1}, {0, 4, 4, 8, 3, 5}, 0.0, 3);
  CHECK(keep[0] == 0 && keep[1] == 1 && keep[2] == -1);
}

// window_score's CUDA backward run on the host: every thread index of every launch of
// window_score_kernel.cu (dx, dW per batch chunk, chunk reduction), against the gradient's
// definition evaluated by scattering each window's contribution (a different loop nest).
namespace wg = fian_fast::window_grad;

struct GradCase {
  int64_t B, T, C;
  std::vector<int64_t> sizes, strides;
};

template <typename T>
double window_grad_error(const GradCase& cs, int64_t chunks) {
  const int64_t B = cs.B, frames = cs.T, C = cs.C, S = static_cast<int64_t>(cs.sizes.size());
  wg::Scales sc{};
  sc.n = static_cast<int>(S);
  int64_t total = 0, taps = 0;
  for (int64_t s = 0; s < S; ++s) {
    sc.size[s] = cs.sizes[s];
    sc.stride[s] = cs.strides[s];
    sc.count[s] = num_windows(frames, cs.sizes[s], cs.strides[s]);
    sc.offset[s] = total;
    sc.kprefix[s] = taps;
    total += sc.count[s];
    taps += cs.sizes[s];
  }
  // deterministic pseudo-random inputs in [-1, 1)
  uint64_t state = 12345;
  auto rnd = [&state]() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / static_cast<double>(1ULL << 52) - 1.0;
  };
  std::vector<T> x(B * frames * C), grad(B * total * 3), wt(3 * taps * C);
  for (auto& v : x) v = static_cast<T>(rnd());
  for (auto& v : grad) v = static_cast<T>(rnd());
  for (auto& v : wt) v = static_cast<T>(rnd());
  auto weight = [&](int64_t s, int64_t o, int64_t c, int64_t t) {  // w_s[o, c, t] from the tap-major copy
    return static_cast<double>(wt[(o * taps + sc.kprefix[s] + t) * C + c]);
  };

  std::vector<double> dx_ref(x.size(), 0.0);
  std::vector<std::vector<double>> dw_ref(S);
  for (int64_t s = 0; s < S; ++s) {
    dw_ref[s].assign(3 * C * sc.size[s], 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < sc.count[s]; ++i)
        for (int64_t t = 0; t < sc.size[s]; ++t)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t o = 0; o < 3; ++o) {
              const double g = grad[(b * total + sc.offset[s] + i) * 3 + o];
              const int64_t f = i * sc.stride[s] + t;
              dx_ref[(b * frames + f) * C + c] += g * weight(s, o, c, t);
              dw_ref[s][(o * C + c) * sc.size[s] + t] += g * static_cast<double>(x[(b * frames + f) * C + c]);
            }
  }

  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> dx(x.size(), nan);
  std::vector<std::vector<T>> dw(S);
  wg::Table<T> tab{};
  tab.geo = sc;
  for (int64_t s = 0; s < S; ++s) {
    dw[s].assign(3 * C * sc.size[s], nan);
    tab.grad_weight[s] = dw[s].data();
  }
  for (int64_t idx = 0; idx < wg::dx_threads(B, frames, C, 4); ++idx)
    wg::dx_thread<4, T, T>(idx, grad.data(), wt.data(), sc, B, frames, C, taps, total, dx.data());
  std::vector<T> partial(chunks > 1 ? chunks * 3 * taps * C : 0, nan);
  for (int64_t j = 0; j < chunks; ++j)
    for (int64_t q = 0; q < taps * C; ++q)
      wg::dw_thread<T, T>(q, j, chunks, grad.data(), x.data(), tab, B, frames, C, total, taps, partial.data());
  if (chunks > 1)
    for (int64_t q = 0; q < taps * C; ++q) wg::dw_reduce_thread<T, T>(q, partial.data(), chunks, tab, C, taps);

  double err = 0.0;  // NaN (an element never written) propagates as a failure
  auto track = [&err](double got, double want) {
    const double e = std::fabs(got - want) / (1.0 + std::fabs(want));
    err = (e > err || e != e) ? e : err;
  };
  for (size_t n = 0; n < dx.size(); ++n) track(dx[n], dx_ref[n]);
  for (int64_t s = 0; s < S; ++s)
    for (size_t n = 0; n < dw[s].size(); ++n) track(dw[s][n], dw_ref[s][n]);
  return err;
}

void test_window_grad() {
  const std::vector<GradCase> cases = {
      {5, 17, 3, {4, 6, 17}, {1, 4, 5}},       // stride not dividing size; a window of the whole video
      {1, 8, 1, {8}, {3}},                      // one sample, one window
      {9, 23, 5, {3, 7, 16, 2}, {2, 3, 4, 2}},  // B not a multiple of the 4 samples a thread takes
      {4, 10, 33, {1, 10}, {1, 1}},             // 1-frame windows
  };
  int64_t cases_run = 0;
  for (const auto& cs : cases) {
    for (int64_t chunks : {int64_t(1), int64_t(2), int64_t(3), cs.B}) {
      if (chunks > cs.B) continue;
      const double e64 = window_grad_error<double>(cs, chunks);
      const double e32 = window_grad_error<float>(cs, chunks);
      CHECK(e64 < 1e-12);
      CHECK(e32 < 1e-5);
      if (!(e64 < 1e-12) || !(e32 < 1e-5))
        std::fprintf(stderr, "  window_grad B=%lld T=%lld C=%lld chunks=%lld: error %g (double), %g (float)\n",
                     static_cast<long long>(cs.B), static_cast<long long>(cs.T), static_cast<long long>(cs.C),
                     static_cast<long long>(chunks), e64, e32);
      ++cases_run;
    }
  }
  CHECK(cases_run == 14);
  // Chunks cover the batch in order, each sample once.
  for (int64_t B : {1, 7, 64}) {
    for (int64_t chunks = 1; chunks <= B; ++chunks) {
      int64_t next = 0;
      for (int64_t j = 0; j < chunks; ++j) {
        int64_t lo, hi;
        wg::batch_chunk(B, chunks, j, &lo, &hi);
        CHECK(lo == next && hi >= lo);
        next = hi;
      }
      CHECK(next == B);
    }
  }
}

}  // namespace

int main() {
  test_iou();
  test_windows();
  test_refine();
  test_nms();
  test_window_grad();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all csrc/ops/common checks passed\n");
  return 0;
}
