/* feedloop-broker: the mock cluster host as a standalone executable (see broker.h). */
#include "broker.h"

int main(int argc, char **argv) {
    return fl_broker_main(argc, argv);
}
