import sys

from yolo_attn.cli import main

sys.exit(main())
