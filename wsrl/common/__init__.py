"""Primitives every job uses: environment variables set for a stretch of code (``environ``), whole-or-absent file
writes (``files``), a policy's episodes stepped in a vector env (``episodes``) and the headless figure backend
(``figures``)."""
