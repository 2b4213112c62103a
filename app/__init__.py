"""ChimeraX session service.

The application factory lives in factory.py and is imported on first use:
the node side of a Slurm job (services/processes/launchers/slurm_job.py) imports this
package too, and must not pay for Flask, SQLAlchemy and the scheduler on
every session start (about 1 s on these machines)."""


def __getattr__(name):
    if name in ("create_app", "Runtime"):
        from . import factory
        return getattr(factory, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
