package main

// version is the Strait version gateways announce.
const version = "0.1.0-dev"

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
