"""The go/no-go suite: criteria, rules, outcomes, verdict, baseline, sweeps, the pytest plugin."""
