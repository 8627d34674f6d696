"""What scripts/reproduce.py runs and checks, apart from how it does so.

spec.py     the vocabulary: a Job (commands and the files they make), a Claim (one value
            read from a recorded file and from the file a job writes now, and its tolerance)
jobs.py     the table of benchmark and training jobs and their claims
studies.py  the jobs and claims of the studies (configs/sweeps/<name>.py)
runner.py   running a job in its directory, resuming it, timing it
compare.py  checking a claim against its recording on the same kind of machine; --record
"""
