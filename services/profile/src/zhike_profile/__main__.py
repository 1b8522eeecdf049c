from zhike_runtime.app import run

from zhike_profile.app import DEFINITION

if __name__ == "__main__":
    run(DEFINITION)
