"""The live lab: a local web page (and the same front end in a notebook) to poke a model.

session  LiveModel: one model behind a lock, one method per request (analyse, generate)
server   the HTTP door: loopback by default, a token on every request, bounded inputs,
         static files from the package only
notebook LabWidget and widget(...): the same front end in a notebook (anywidget)

``python -m gptdecoder lab --run PATH`` starts it (gptdecoder/commands/lab.py).
"""


def widget(*args, **kwargs):
    """The live lab in a notebook cell: ``gptdecoder.live.widget("runs/config")`` (see notebook.py)."""
    from gptdecoder.live.notebook import widget as make  # anywidget is imported only here

    return make(*args, **kwargs)
