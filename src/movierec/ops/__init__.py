"""Running the system: deployment after a promotion, the traffic simulator, the service as a
child process, and the end-to-end demo."""
