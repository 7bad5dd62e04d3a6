// RUN: kiln-opt %s --kiln-select-strategies=target=cuda:sm_70 --verify-diagnostics

// COM: A target the compiler does not have is named with the ones it has.
// expected-error @below {{kiln-select-strategies: unknown GPU architecture 'sm_70'}}
module {
}
