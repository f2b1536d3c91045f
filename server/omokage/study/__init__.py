"""User studies: study files (definition), walking participants through them (runner), export and report."""
