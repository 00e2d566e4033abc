// Package composerun drives docker-compose.yml's stack for real: its test,
// TestComposeStack, runs against a stack that scripts/compose-test.sh brought up
// (SPAWNER_COMPOSE_DIR names the directory of docker-compose.yml, and COMPOSE_FILE the
// files), sends signed jobs through the balancer with the fake GitHub's control API,
// kills containers while they run, and checks the numbers the fake GitHub, the
// simulated cloud and `spawner status` report. Without SPAWNER_COMPOSE_DIR the test
// skips; scripts/compose-test.sh, which sets it, fails unless the test passed.
//
// It uses the standard library and the docker CLI only, so that it can move with the
// deployment files.
package composerun
