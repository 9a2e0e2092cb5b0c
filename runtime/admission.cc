#include "runtime/admission.h"

#include "absl/strings/str_cat.h"

namespace flatstore::internal {

absl::Status Admission::admit(WhenFull when_full) {
  absl::MutexLock lock(&mu_);
  auto room = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_.load() < max_pending_; };
  if (!room()) {
    if (when_full == WhenFull::kFailFast) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the writer queue is full: ", pending_.load(),
                       " transactions are pending (WorkspaceOptions::max_pending_transactions)"));
    }
    mu_.Await(absl::Condition(&room));
  }
  pending_ += 1;
  return absl::OkStatus();
}

void Admission::enter() {
  absl::MutexLock lock(&mu_);
  pending_ += 1;
}

void Admission::leave() {
  absl::MutexLock lock(&mu_);
  pending_ -= 1;
}

}  // namespace flatstore::internal
