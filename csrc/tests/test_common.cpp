// Unit tests of the torch-free maths in csrc/ops/common/ (interval.h, nms.h), run by ctest.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "ops/common/interval.h"
#include "ops/common/nms.h"

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

}  // namespace

int main() {
  test_iou();
  test_windows();
  test_refine();
  test_nms();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all csrc/ops/common checks passed\n");
  return 0;
}
