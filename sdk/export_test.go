package sdk

// CanonicalHeader exposes canonicalHeader to the tests.
var CanonicalHeader = canonicalHeader
