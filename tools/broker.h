/* broker: hosts a librdkafka mock cluster as a process of its own, so that the workers, the CLI
 * and the tests can talk the real Kafka protocol to a "cluster" that needs nothing installed.
 *
 * It creates the loop's topics, prints the bootstrap servers, and takes fault-injection commands
 * (broker down/up, request errors, round-trip time, new topics) one per line from a control FIFO
 * or file and/or stdin until SIGTERM/SIGINT. `feedloop-broker --help` lists the options. */
#ifndef FL_BROKER_H
#define FL_BROKER_H

/* Run the mock cluster host with command-line arguments argv[0..argc) (argv[0] is the program
 * or subcommand name, used in messages only). Blocks until SIGTERM or SIGINT, then tears the
 * cluster down. Returns a process exit status: 0 after a signal or --help, 1 when the cluster
 * could not be set up, 2 on a usage error. Installs handlers for SIGTERM, SIGINT and SIGPIPE
 * (ignored) for the life of the call; call it from the main thread only, at most once at a
 * time. */
int fl_broker_main(int argc, char **argv);

#endif
