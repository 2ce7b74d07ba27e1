"""The ``yolo-attn`` commands, one thin module each: ``configure_parser(parser)`` declares the flags and
``run(args) -> int`` turns them into the library's typed config, calls the library and prints."""
