// Anchors the generated headers of the test schemas in a target.
