#include "runtime/plan_cache.h"

#include <utility>

#include "runtime/absl_compat.h"

namespace flatstore::internal {

std::shared_ptr<const CachedPlan> PlanCache::find(std::string_view shape) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = plans_.find(av(shape));
  return it == plans_.end() ? nullptr : it->second;
}

void PlanCache::add(std::string shape, std::shared_ptr<const CachedPlan> plan) {
  absl::MutexLock lock(&mu_);
  if (plans_.size() >= kMaxShapes) plans_.clear();
  plans_.insert_or_assign(std::move(shape), std::move(plan));
}

}  // namespace flatstore::internal
