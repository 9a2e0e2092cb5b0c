// The native type of the `Point` struct in constructs.v2.fbs: what a user's own type
// given by `native_type` looks like. flatc's object API converts with the Pack and
// UnPack declared here, defined in constructs_test.cc.
#ifndef FLATSTORE_TESTS_CODEGEN_SCHEMAS_NATIVE_POINT_H_
#define FLATSTORE_TESTS_CODEGEN_SCHEMAS_NATIVE_POINT_H_

namespace flatstore::test::native {

struct Point {
  float x = 0;
  float y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};

}  // namespace flatstore::test::native

namespace flatstore::test::constructs {
struct Point;
}  // namespace flatstore::test::constructs

namespace flatbuffers {
flatstore::test::constructs::Point Pack(const flatstore::test::native::Point& point);
const flatstore::test::native::Point UnPack(const flatstore::test::constructs::Point& point);
}  // namespace flatbuffers

#endif  // FLATSTORE_TESTS_CODEGEN_SCHEMAS_NATIVE_POINT_H_
