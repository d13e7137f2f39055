"""One-off studies: each answers one question with measurements (engines side by side, build cost by
model size, INT8 variants, shape buckets, faults under load...). They use the harness in
benchmarks/; nothing else, tests included, imports them."""
