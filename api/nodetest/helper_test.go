package nodetest

// helperEnv makes the test binary run as a bare agent process (for the
// tests that kill one with SIGKILL); its configuration comes from the
// environment.
const helperEnv = "CROWBAR_TEST_AGENT_PROCESS"

func helperAgent() int { return 0 }
