//! Compile errors for every mistake a user can make in `#[task]` and `#[flow]`,
//! each checked against its `.stderr` file.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
