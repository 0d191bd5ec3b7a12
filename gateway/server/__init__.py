"""Process management: one worker serving on uvloop, or a supervisor running N of them on one port."""
