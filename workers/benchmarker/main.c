/* feedloop-benchmarker: the shell (config, loop, Kafka, Redis, signals, shutdown).
 *
 * TODO(lead): placeholder so the build links; the shell is wired onto the runtime from the core in
 * benchmarker.h (judge, history, join, review request). */
int main(void) {
    return 0;
}
